"""The completer language server (pygls): one LSP feature per module."""
