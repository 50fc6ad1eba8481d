// Pure helpers (no vscode import), unit-tested with node:test.

/** The server's completer/status notification. */
export interface ServerStatus {
  state?: string; // loading | ready | error
  model?: string;
  backend?: string;
  device?: string;
  lastLatencyMs?: number | null;
  message?: string;
}

/** Status bar text: "$(sparkle) completer 12 ms", or the state when there is no latency yet. */
export function statusText(status: ServerStatus, enabled: boolean): string {
  if (!enabled) {
    return "$(circle-slash) completer off";
  }
  if (status.state === "error") {
    return "$(error) completer";
  }
  if (status.state !== "ready") {
    return "$(sync~spin) completer";
  }
  const latency = status.lastLatencyMs;
  return latency === null || latency === undefined
    ? "$(sparkle) completer"
    : `$(sparkle) completer ${Math.round(latency)} ms`;
}

/** Status bar tooltip: everything the notification says, and whether VS Code asks at every key
 * (`undelayed`: the proposed API is enabled) or after its own 50 ms wait. */
export function statusTooltip(status: ServerStatus, undelayed = false): string {
  const model = (status.model || "?").split(/[\\/]/).pop();
  const lines = [`state: ${status.state || "starting"}`, `model: ${model}`, `backend: ${status.backend || "?"} on ${status.device || "?"}`,
    undelayed ? "asked: at every key" : "asked: after VS Code's 50 ms wait"];
  if (status.message) {
    lines.push(status.message);
  }
  return lines.join("\n");
}

/** UTF-16 length of the text a partial accept inserted (what didPartiallyAcceptCompletion reports). */
export function acceptedLength(inserted: string): number {
  return inserted.length; // JavaScript strings are UTF-16
}

/** initializationOptions from the settings: explicit backend/model override the free-form object. */
export function initializationOptions(extra: Record<string, unknown>, backend: string, model: string): Record<string, unknown> {
  const options: Record<string, unknown> = { ...extra };
  if (backend) {
    options.backend = backend;
  }
  if (model) {
    options.model = model;
  }
  return options;
}

/** The server's command line: a Python interpreter running `-m completer` is started isolated (-I),
 * so modules in the workspace folder (the server's working directory) or on PYTHONPATH are never
 * imported in place of completer's. Any other command runs as given. */
export function serverLaunch(command: string, args: string[]): { command: string; args: string[] } {
  const exe = (command.split(/[\\/]/).pop() || "").toLowerCase();
  const python = /^python(\d+(\.\d+)*)?w?(\.exe)?$/.test(exe) || exe === "py" || exe === "py.exe";
  if (!python || !runsCompleterModule(args) || args.includes("-I")) {
    return { command, args: [...args] };
  }
  return { command, args: ["-I", ...args] };
}

/** Whether the interpreter's own options (before a script or -c) end with `-m completer`. */
function runsCompleterModule(args: string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-m") {
      return args[i + 1] === "completer";
    }
    if (a.startsWith("-m")) {
      return a === "-mcompleter";
    }
    if (a === "-X" || a === "-W") {
      i++; // takes a value
    } else if (!a.startsWith("-") || a === "-" || a.startsWith("-c")) {
      return false; // a script, stdin or a command: completer is not what runs
    }
  }
  return false;
}
