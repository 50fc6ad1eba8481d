// completer for VS Code: starts `completer serve --stdio` and shows its suggestions through the
// standard inline completion UI (vscode-languageclient >= 10.0.1 registers inline completion by
// default; documentSelector is mandatory for it to register at all).
//
// Tab accepts (VS Code's own inline suggestion commit, which runs the item's command, so the server
// counts the acceptance); Ctrl+Right / Ctrl+Down accept the next word / line and report it with
// Copilot's textDocument/didPartiallyAcceptCompletion. The stable API has no "shown" event: an item
// returned to VS Code is reported with textDocument/didShowCompletion.
import * as vscode from "vscode";
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  TransportKind,
} from "vscode-languageclient/node";
import { acceptedLength, initializationOptions, serverLaunch, ServerStatus, statusText, statusTooltip } from "./status";

let client: LanguageClient | undefined;
let enabled = true;
let status: ServerStatus = {};
let lastShown: { insertText: string; command?: { title: string; command: string; arguments?: unknown[] } } | undefined;

function settings() {
  return vscode.workspace.getConfiguration("completer");
}

function render(bar: vscode.StatusBarItem): void {
  bar.text = statusText(status, enabled);
  bar.tooltip = statusTooltip(status);
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
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    outputChannelName: "completer",
    initializationOptions: initializationOptions(
      cfg.get<Record<string, unknown>>("initializationOptions", {}),
      cfg.get<string>("backend", ""),
      cfg.get<string>("model", ""),
    ),
    middleware: {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        if (!enabled) {
          return null;
        }
        const result = await next(document, position, context, token);
        const items = Array.isArray(result) ? result : result?.items;
        const first = items?.[0];
        if (first && client) {
          const text = typeof first.insertText === "string" ? first.insertText : first.insertText.value;
          lastShown = { insertText: text, command: first.command };
          void client.sendNotification("textDocument/didShowCompletion", { item: lastShown });
        }
        return result;
      },
    },
  };
  const c = new LanguageClient("completer", "completer", serverOptions, clientOptions);
  c.onNotification("completer/status", (params: ServerStatus) => {
    status = params;
    render(bar);
  });
  return c;
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
    }),
  );
  try {
    await client.start();
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
