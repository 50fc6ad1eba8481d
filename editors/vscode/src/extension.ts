// completer for VS Code: starts `completer serve --stdio` and shows its suggestions through the
// standard inline completion UI (vscode-languageclient >= 10.0.1 registers inline completion by
// default; documentSelector is mandatory for it to register at all).
//
// Tab accepts (VS Code's own inline suggestion commit, which runs the item's command, so the server
// counts the acceptance); Ctrl+Right / Ctrl+Down accept the next word / line and report it with
// Copilot's textDocument/didPartiallyAcceptCompletion. The stable API has no "shown" event: an item
// returned to VS Code is reported with textDocument/didShowCompletion.
//
// VS Code waits 50 ms after a key before it asks any inline completion provider, unless a provider
// registered with metadata asks for less. That metadata is proposed API (inlineCompletionsAdditions):
// code-server enables it for every extension; VS Code only where the user does (`code
// --enable-proposed-api completer.completer`, or "enable-proposed-api": ["completer.completer"] in
// argv.json). There, unless completer.askAtEveryKey is off, the extension registers a provider of its
// own that VS Code asks at once (debounceDelayMs 0), and the language client's stays silent;
// elsewhere the language client's answers, after VS Code's 50 ms.
import * as vscode from "vscode";
import {
  InlineCompletionRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import { acceptedLength, initializationOptions, serverLaunch, ServerStatus, statusText, statusTooltip } from "./status";

// Notebook cells too: the server joins a notebook's code cells into one document (notebook sync).
const DOCUMENTS = [{ scheme: "file" }, { scheme: "untitled" }, { scheme: "vscode-notebook-cell" }];

let client: LanguageClient | undefined;
let enabled = true;
let status: ServerStatus = {};
// Our own provider, asked without VS Code's 50 ms wait (undefined: askAtEveryKey off, or the proposal not enabled).
let undelayed: vscode.Disposable | undefined;
let lastShown: { insertText: string; command?: { title: string; command: string; arguments?: unknown[] } } | undefined;

function settings() {
  return vscode.workspace.getConfiguration("completer");
}

function render(bar: vscode.StatusBarItem): void {
  bar.text = statusText(status, enabled);
  bar.tooltip = statusTooltip(status, undelayed !== undefined);
}

/** Reports the first item, the one VS Code shows, to the server (didShowCompletion). */
function reportShown(
  result: vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined,
): vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined {
  const items = Array.isArray(result) ? result : result?.items;
  const first = items?.[0];
  if (first && client) {
    const text = typeof first.insertText === "string" ? first.insertText : first.insertText.value;
    lastShown = { insertText: text, command: first.command };
    void client.sendNotification("textDocument/didShowCompletion", { item: lastShown });
  }
  return result;
}

// registerInlineCompletionItemProvider with the proposal's third argument, which @types/vscode lacks.
type RegisterWithMetadata = (
  selector: vscode.DocumentSelector,
  provider: vscode.InlineCompletionItemProvider,
  metadata: { debounceDelayMs: number; displayName: string },
) => vscode.Disposable;

/** A provider that VS Code asks without its 50 ms wait, where it lets completer use the proposal;
 * else undefined (VS Code throws before registering anything). It asks the server as the language
 * client's own provider does. */
function registerUndelayed(c: LanguageClient): vscode.Disposable | undefined {
  const provider: vscode.InlineCompletionItemProvider = {
    provideInlineCompletionItems: async (document, position, context, token) => {
      if (!enabled) {
        return null;
      }
      try {
        const params = c.code2ProtocolConverter.asInlineCompletionParams(document, position, context);
        const result = await c.sendRequest(InlineCompletionRequest.type, params, token);
        if (token.isCancellationRequested) {
          return null;
        }
        return reportShown(await c.protocol2CodeConverter.asInlineCompletionResult(result, token));
      } catch (error) {
        return c.handleFailedRequest(InlineCompletionRequest.type, token, error, null);
      }
    },
  };
  const register = vscode.languages.registerInlineCompletionItemProvider as unknown as RegisterWithMetadata;
  try {
    return register(DOCUMENTS, provider, { debounceDelayMs: 0, displayName: "completer" });
  } catch {
    return undefined;
  }
}

function createClient(bar: vscode.StatusBarItem): LanguageClient {
  // serverCommand, serverArgs, backend, model and initializationOptions are machine-scoped
  // (package.json): only the user's own settings choose what runs, never a workspace's.
  const cfg = settings();
  const launch = serverLaunch(cfg.get<string>("serverCommand", "completer"), cfg.get<string[]>("serverArgs", ["serve", "--stdio"]));
  const serverOptions: ServerOptions = {
    command: launch.command,
    args: launch.args,
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: DOCUMENTS,
    outputChannelName: "completer",
    initializationOptions: initializationOptions(
      cfg.get<Record<string, unknown>>("initializationOptions", {}),
      cfg.get<string>("backend", ""),
      cfg.get<string>("model", ""),
    ),
    middleware: {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        if (!enabled || undelayed) {
          return null; // undelayed: our own provider answers the same request
        }
        return reportShown(await next(document, position, context, token));
      },
    },
  };
  const c = new LanguageClient("completer", "completer", serverOptions, clientOptions);
  c.onNotification("completer/status", (params: ServerStatus) => {
    status = params;
    render(bar);
  });
  // The server's own status stops with it: a server that died and was not started again (the
  // language client gives up after 5 exits in 3 minutes) shows as an error, not as its last "ready".
  c.onDidChangeState((e) => {
    if (e.newState === State.Stopped) {
      status = { state: "error", message: "the server stopped (completer: Show Log); completer: Restart Server starts it" };
      render(bar);
    } else if (e.newState === State.Starting) {
      status = { state: "loading" };
      render(bar);
    }
  });
  return c;
}

/** Registers the undelayed provider or takes it away, as completer.askAtEveryKey says and VS Code
 * allows, and says in the log which provider answers. */
function askAtEveryKey(bar: vscode.StatusBarItem): void {
  undelayed?.dispose();
  const wanted = settings().get<boolean>("askAtEveryKey", true);
  undelayed = wanted && client ? registerUndelayed(client) : undefined;
  client?.outputChannel.appendLine(undelayed
    ? "inline suggestions: asked at every key (VS Code's 50 ms wait skipped)"
    : wanted
      ? "inline suggestions: asked after VS Code's 50 ms wait (its proposed API is not enabled for completer: " +
        "start VS Code with --enable-proposed-api completer.completer to skip the wait; see the README)"
      : "inline suggestions: asked after VS Code's 50 ms wait (completer.askAtEveryKey is off)");
  render(bar);
}

async function partialAccept(builtin: string): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !client) {
    return;
  }
  const doc = editor.document;
  const inserted = new Promise<string>((resolve) => {
    const timer = setTimeout(() => {
      sub.dispose();
      resolve("");
    }, 1000);
    const sub = vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document === doc && e.contentChanges.length > 0) {
        clearTimeout(timer);
        sub.dispose();
        resolve(e.contentChanges.map((c) => c.text).join(""));
      }
    });
  });
  await vscode.commands.executeCommand(builtin);
  const text = await inserted;
  if (text && lastShown) {
    await client.sendNotification("textDocument/didPartiallyAcceptCompletion", {
      item: lastShown,
      acceptedLength: acceptedLength(text),
    });
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  enabled = settings().get<boolean>("enable", true);
  const bar = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  bar.command = "completer.toggle";
  render(bar);
  bar.show();
  client = createClient(bar);
  context.subscriptions.push(
    bar,
    vscode.commands.registerCommand("completer.toggle", () => {
      enabled = !enabled;
      render(bar);
    }),
    vscode.commands.registerCommand("completer.restart", async () => {
      status = { state: "loading" };
      render(bar);
      await client?.restart();
    }),
    vscode.commands.registerCommand("completer.showLog", () => client?.outputChannel.show()),
    vscode.commands.registerCommand("completer.acceptNextWord", () =>
      partialAccept("editor.action.inlineSuggest.acceptNextWord"),
    ),
    vscode.commands.registerCommand("completer.acceptNextLine", () =>
      partialAccept("editor.action.inlineSuggest.acceptNextLine"),
    ),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("completer.enable")) {
        enabled = settings().get<boolean>("enable", true);
        render(bar);
      }
      if (e.affectsConfiguration("completer.askAtEveryKey") && client?.isRunning()) {
        askAtEveryKey(bar);
      }
    }),
    { dispose: () => undelayed?.dispose() },
  );
  try {
    await client.start();
    askAtEveryKey(bar);
  } catch (err) {
    status = { state: "error", message: `could not start the completer server: ${err}` };
    render(bar);
    void vscode.window.showErrorMessage(
      `completer: could not start \`${settings().get("serverCommand")}\`; set completer.serverCommand. ${err}`,
    );
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
