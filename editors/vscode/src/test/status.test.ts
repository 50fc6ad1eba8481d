import { strict as assert } from "node:assert";
import { test } from "node:test";
import { acceptedLength, initializationOptions, statusText, statusTooltip } from "../status";

test("status bar text follows the server state", () => {
  assert.equal(statusText({ state: "ready", lastLatencyMs: 12.4 }, true), "$(sparkle) completer 12 ms");
  assert.equal(statusText({ state: "ready", lastLatencyMs: null }, true), "$(sparkle) completer");
  assert.equal(statusText({ state: "loading" }, true), "$(sync~spin) completer");
  assert.equal(statusText({ state: "error", message: "no model" }, true), "$(error) completer");
  assert.equal(statusText({ state: "ready", lastLatencyMs: 5 }, false), "$(circle-slash) completer off");
});

test("tooltip names the model file and the error", () => {
  const tip = statusTooltip({ state: "error", model: "/x/models/embedded", backend: "torch", device: "cpu", message: "boom" });
  assert.equal(tip, "state: error\nmodel: embedded\nbackend: torch on cpu\nboom");
});

test("accepted length counts UTF-16 code units", () => {
  assert.equal(acceptedLength("abc"), 3);
  assert.equal(acceptedLength("𝔘x"), 3);
});

test("explicit settings override free-form initialization options", () => {
  assert.deepEqual(initializationOptions({ maxTokens: 8, model: "a" }, "torch", "b"), { maxTokens: 8, model: "b", backend: "torch" });
  assert.deepEqual(initializationOptions({}, "", ""), {});
});
