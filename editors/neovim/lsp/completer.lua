-- Default client configuration for `vim.lsp.enable('completer')` (Neovim >= 0.11).
-- Override any field with vim.lsp.config('completer', { ... }) or require('completer').setup({ ... }).
return {
  cmd = { 'completer', 'serve', '--stdio' },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml' },
  init_options = {},
}
