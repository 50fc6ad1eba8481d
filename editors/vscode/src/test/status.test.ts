import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { acceptedLength, initializationOptions, serverLaunch, statusText, statusTooltip } from "../status";

test("status bar text follows the server state", () => {
  assert.equal(statusText({ state: "ready", lastLatencyMs: 12.4 }, true), "$(sparkle) completer 12 ms");
  assert.equal(statusText({ state: "ready", lastLatencyMs: null }, true), "$(sparkle) completer");
  assert.equal(statusText({ state: "loading" }, true), "$(sync~spin) completer");
  assert.equal(statusText({ state: "error", message: "no model" }, true), "$(error) completer");
  assert.equal(statusText({ state: "ready", lastLatencyMs: 5 }, false), "$(circle-slash) completer off");
});

test("tooltip names the model file and the error", () => {
  const tip = statusTooltip({ state: "error", model: "/x/models/embedded", backend: "torch", device: "cpu", message: "boom" });
  assert.equal(tip, "state: error\nmodel: embedded\nbackend: torch on cpu\nasked: after VS Code's 50 ms wait\nboom");
  assert.match(statusTooltip({ state: "ready" }, true), /\nasked: at every key$/);
});

test("accepted length counts UTF-16 code units", () => {
  assert.equal(acceptedLength("abc"), 3);
  assert.equal(acceptedLength("𝔘x"), 3);
});

test("explicit settings override free-form initialization options", () => {
  assert.deepEqual(initializationOptions({ maxTokens: 8, model: "a" }, "torch", "b"), { maxTokens: 8, model: "b", backend: "torch" });
  assert.deepEqual(initializationOptions({}, "", ""), {});
});

test("a Python interpreter running -m completer is started isolated", () => {
  assert.deepEqual(serverLaunch("/home/u/.venv/bin/python3.11", ["-m", "completer", "serve", "--stdio"]).args,
    ["-I", "-m", "completer", "serve", "--stdio"]);
  assert.deepEqual(serverLaunch("C:\\Python312\\python.exe", ["-mcompleter", "serve"]).args, ["-I", "-mcompleter", "serve"]);
  assert.deepEqual(serverLaunch("python", ["-I", "-m", "completer", "serve"]).args, ["-I", "-m", "completer", "serve"]);
  assert.deepEqual(serverLaunch("completer", ["serve", "--stdio"]), { command: "completer", args: ["serve", "--stdio"] });
  assert.deepEqual(serverLaunch("python3", ["-X", "utf8", "-m", "completer"]).args, ["-I", "-X", "utf8", "-m", "completer"]);
  assert.deepEqual(serverLaunch("python3", ["tool.py", "-m", "completer"]).args, ["tool.py", "-m", "completer"]);
});

test("settings that choose what runs or how much memory it takes are machine-scoped", () => {
  // A cloned repository's .vscode/settings.json must not pick the server command, its arguments,
  // the model, the backend or initializationOptions: VS Code reads machine-scoped settings from the
  // user's own settings only.
  const manifest = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
  const properties = manifest.contributes.configuration.properties;
  for (const key of ["serverCommand", "serverArgs", "model", "backend", "initializationOptions"]) {
    assert.equal(properties[`completer.${key}`].scope, "machine", key);
  }
  assert.equal(properties["completer.initializationOptions"].properties.cacheMb.maximum, 4096);
});
