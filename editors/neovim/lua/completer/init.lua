-- completer: inline code completion from `completer serve --stdio` (Neovim >= 0.11).
--
-- The plugin asks for inline completions itself: debounced on every change in insert mode,
-- cancelling the request it supersedes, dropping answers for an older buffer or a moved cursor
-- (and the ghost text itself when the cursor moves away from it);
-- ghost text is an extmark (first line inline, the rest as virtual lines), and typing what it shows
-- keeps the rest in view until the server answers for the new text. A suggestion whose range covers
-- closers right of the cursor (an autopairs plugin's `)`, which it runs through) shows in parts around
-- them and replaces them on accept. It sends Copilot's textDocument/didShowCompletion and
-- textDocument/didPartiallyAcceptCompletion, and runs the item's command on accept (the server
-- counts acceptances, locally).
--
-- A server that exits unasked (killed, crashed) is started again, as VS Code's language client does:
-- at most `restarts` (4) times in 3 minutes, so the fifth exit leaves it down; then the status says so
-- and `:Completer restart` is left to the user.
--
-- `builtin = true` (Neovim 0.12+) hands the suggestions to Neovim's own vim.lsp.inline_completion
-- instead. Not the default: it asks only 200 ms after the last key (fixed in Neovim 0.12), has no
-- accept-word, accept-line or dismiss, and does not say what it showed.

local M = {}

local ns = vim.api.nvim_create_namespace('completer')

M.defaults = {
  cmd = nil, -- default: lsp/completer.lua ({ 'completer', 'serve', '--stdio' })
  filetypes = nil, -- nil: every filetype
  init_options = {}, -- passed to the server (backend, model, maxTokens, ...)
  debounce_ms = 0, -- the server paces its own model calls (lsp/pacing.py): a delay here only adds latency
  builtin = false, -- true or 'auto': Neovim's vim.lsp.inline_completion where it exists (0.12+)
  restarts = 4, -- a server that exits unasked is started again, this many times in 3 minutes (0: never)
  keymaps = {
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-Down>',
    dismiss = '<C-]>',
    next = '<M-]>', -- the next of the server's alternatives
    prev = '<M-[>',
  },
}

M.config = vim.deepcopy(M.defaults)
local state = { enabled = true, status = {}, buffers = {}, stopping = false, exits = {}, started = {} }
local RESTART_WINDOW_S = 180

local function client_for(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = 'completer' })[1]
end

local function use_builtin()
  return M.config.builtin ~= false and vim.lsp.inline_completion ~= nil
end

local function buffer_state(buf)
  local s = state.buffers[buf]
  if not s then
    s = { timer = vim.uv.new_timer() }
    state.buffers[buf] = s
  end
  return s
end

local function utf16_len(text)
  local ok, n = pcall(vim.str_utfindex, text, 'utf-16')
  return ok and n or #text
end

--- Remove the ghost text of a buffer (the suggestion is forgotten).
function M.clear(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  local s = state.buffers[buf]
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  end
  if s then
    s.shown = nil
  end
end

local function cancel(buf)
  local s = state.buffers[buf]
  local client = client_for(buf)
  if s and s.request_id and client then
    client:cancel_request(s.request_id)
  end
  if s then
    s.request_id = nil
  end
end

local function item_text(item)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value
  end
  return text or ''
end

-- The byte column where the item's range ends on the cursor row: beyond `col` when the suggestion
-- runs through closers the editor put right of the cursor (`f("ab|")` + `c", 1)` replaces `")`).
local function range_end(buf, client, item, row, col)
  local r = item.range
  if type(r) ~= 'table' or r.start.line ~= row or r['end'].line ~= row then
    return col
  end
  local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
  local ok, e = pcall(vim.str_byteindex, line, client.offset_encoding, r['end'].character, false)
  if not ok or e <= col then
    return col
  end
  return e
end

-- Where the characters of `replaced` occur in `text`, in order (as many of them as do): the byte
-- positions a suggestion passes through the closers right of the cursor at.
local function matched(text, replaced)
  local out, at = {}, 1
  for i = 1, #replaced do
    local found = text:find(replaced:sub(i, i), at, true)
    if not found then
      break
    end
    out[i], at = found, found + 1
  end
  return out
end

-- Where the first line of `text` goes as ghost text around `replaced`, the text it runs through
-- (they are a subsequence of it): { { byte column, piece }, ... }, the pieces that are not in the
-- buffer already, each before the replaced character it precedes.
local function pieces(text, replaced, col)
  local out, at = {}, 1
  for i, found in ipairs(matched(text, replaced)) do
    if found > at then
      table.insert(out, { col + i - 1, text:sub(at, found - 1) })
    end
    at = found + 1
  end
  if at <= #text then
    table.insert(out, { col + #replaced, text:sub(at) })
  end
  return out
end

-- `typed`: the start of the item's text that the user has typed since it was shown (the rest shows).
local function render(buf, client, items, index, row, col, typed)
  local item = items[index]
  typed = typed or ''
  local text = item_text(item):sub(#typed + 1)
  if text == '' then
    return
  end
  local lines = vim.split(text, '\n', { plain = true })
  local stop = range_end(buf, client, item, row, col)
  local replaced = stop > col and vim.api.nvim_buf_get_text(buf, row, col, row, stop, {})[1] or ''
  local parts = pieces(lines[1], replaced, col)
  if #parts == 0 then -- a suggestion that starts on the next line
    parts = { { col, '' } }
  end
  for i, piece in ipairs(parts) do
    local opts = { virt_text = { { piece[2], 'Comment' } }, virt_text_pos = 'inline', hl_mode = 'combine' }
    if i == 1 and #lines > 1 then
      opts.virt_lines = {}
      for j = 2, #lines do
        table.insert(opts.virt_lines, { { lines[j], 'Comment' } })
      end
    end
    vim.api.nvim_buf_set_extmark(buf, ns, row, piece[1], opts)
  end
  buffer_state(buf).shown = { item = item, text = text, row = row, col = col, replaced = replaced, items = items,
                              index = index, typed = typed, tick = vim.api.nvim_buf_get_changedtick(buf),
                              line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or '' }
  if typed == '' then -- still the suggestion the server gave: shown once
    client:notify('textDocument/didShowCompletion', { item = item })
  end
end

-- How much of the shown item's text is in the buffer (typed, or accepted a word at a time), when the
-- line is what it was at showing with just more of the suggestion's first line at its place, and
-- more of it still to come; nil otherwise. Suggestions through closers are left to the server.
local function typed_into_shown(buf)
  local s = state.buffers[buf]
  local shown = s and s.shown
  if not shown or shown.replaced ~= '' or vim.api.nvim_get_current_buf() ~= buf then
    return nil
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  if row - 1 ~= shown.row or col < shown.col then
    return nil
  end
  local line = vim.api.nvim_buf_get_lines(buf, row - 1, row, false)[1] or ''
  local typed = line:sub(shown.col + 1, col)
  local first = shown.text:match('^[^\n]*')
  if first:sub(1, #typed) ~= typed or (#typed > 0 and #typed >= #first) then
    return nil -- not what it shows, or its first line typed to the end (the server decides what follows)
  end
  if line ~= shown.line:sub(1, shown.col) .. typed .. shown.line:sub(shown.col + 1) then
    return nil
  end
  return shown.typed .. typed
end

local function request(buf)
  local client = client_for(buf)
  if not client or not state.enabled or not vim.api.nvim_buf_is_valid(buf) then
    return
  end
  if vim.api.nvim_get_current_buf() ~= buf or vim.api.nvim_get_mode().mode:sub(1, 1) ~= 'i' then
    return
  end
  local s = buffer_state(buf)
  cancel(buf)
  local win = vim.api.nvim_get_current_win()
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  params.context = { triggerKind = 2 }
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local cursor = vim.api.nvim_win_get_cursor(win)
  local ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if s.request_id == id then
      s.request_id = nil
    end
    if err or not result or not vim.api.nvim_buf_is_valid(buf) then
      return
    end
    -- An answer for an older buffer or another cursor position is useless: drop it.
    if vim.api.nvim_buf_get_changedtick(buf) ~= tick or vim.api.nvim_get_mode().mode:sub(1, 1) ~= 'i' then
      return
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if now[1] ~= cursor[1] or now[2] ~= cursor[2] then
      return
    end
    local items = result.items or result
    M.clear(buf) -- what was kept showing while the user typed through it, if the server shows nothing now
    if items and items[1] then
      render(buf, client, items, 1, cursor[1] - 1, cursor[2])
    end
  end, buf)
  if ok then
    s.request_id = id
  end
end

local function schedule(buf)
  local s = buffer_state(buf)
  -- Typed what the ghost text showed: the rest stays in view at once (no flicker, no wait for the
  -- debounce and the server), until the server's answer for the new text replaces it.
  local shown, typed, client = s.shown, typed_into_shown(buf), client_for(buf)
  M.clear(buf)
  if typed and client then
    local row, col = unpack(vim.api.nvim_win_get_cursor(0))
    render(buf, client, { shown.item }, 1, row - 1, col, typed)
  end
  s.timer:stop()
  s.timer:start(M.config.debounce_ms, 0, vim.schedule_wrap(function()
    request(buf)
  end))
end

--- Whether a suggestion is shown in the current buffer.
function M.visible(buf)
  local s = state.buffers[buf or vim.api.nvim_get_current_buf()]
  return s ~= nil and s.shown ~= nil
end

local function first_word(text)
  return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text
end

local function first_line(text)
  local line = text:match('^[^\n]*')
  if line == '' and text:sub(1, 1) == '\n' then
    return '\n' .. (text:sub(2):match('^[^\n]*') or '')
  end
  return line
end

--- Show the next (delta 1) or previous (-1) of the server's alternatives for the same place.
--- Returns false when there is nothing to cycle to.
function M.cycle(delta)
  local buf = vim.api.nvim_get_current_buf()
  local s = state.buffers[buf]
  local shown = s and s.shown
  local client = client_for(buf)
  if not shown or #shown.items < 2 or not client then
    return false
  end
  local index = (shown.index - 1 + delta) % #shown.items + 1
  M.clear(buf)
  render(buf, client, shown.items, index, shown.row, shown.col)
  return true
end

--- Insert the shown suggestion ('all'), its next word ('word') or its next line ('line').
--- Returns false when nothing is shown.
function M.accept(kind)
  kind = kind or 'all'
  local buf = vim.api.nvim_get_current_buf()
  local s = state.buffers[buf]
  if not s or not s.shown then
    return false
  end
  local shown = s.shown
  local part = shown.text
  if kind == 'word' then
    part = first_word(shown.text)
  elseif kind == 'line' then
    part = first_line(shown.text)
  end
  M.clear(buf)
  local lines = vim.split(part, '\n', { plain = true })
  -- the closers right of the cursor that the accepted part runs through are replaced, not doubled
  local stop = shown.col + #matched(part, shown.replaced)
  vim.api.nvim_buf_set_text(buf, shown.row, shown.col, shown.row, stop, lines)
  local end_row = shown.row + #lines - 1
  local end_col = (#lines == 1 and shown.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  local client = client_for(buf)
  if client and part ~= shown.text and #lines == 1 and shown.replaced == '' then
    render(buf, client, { shown.item }, 1, end_row, end_col, shown.typed .. part) -- the rest, at once
  end
  if client then
    if part == shown.text then
      if shown.item.command then
        client:exec_cmd(shown.item.command, { bufnr = buf })
      end
    else
      -- the length of the item's text now in the buffer: what was typed into it, and the part accepted
      client:notify('textDocument/didPartiallyAcceptCompletion',
        { item = shown.item, acceptedLength = utf16_len(shown.typed .. part) })
    end
  end
  return true
end

local function map_accept(buf, lhs, kind)
  if not lhs or lhs == '' then
    return
  end
  vim.keymap.set('i', lhs, function()
    if use_builtin() and kind == 'all' then
      if vim.lsp.inline_completion.get({ bufnr = buf }) then
        return ''
      end
      return vim.api.nvim_replace_termcodes(lhs, true, false, true)
    end
    if M.visible(buf) then
      vim.schedule(function()
        M.accept(kind)
      end)
      return ''
    end
    return vim.api.nvim_replace_termcodes(lhs, true, false, true) -- the key's usual meaning
  end, { buffer = buf, expr = true, replace_keycodes = false, desc = 'completer: accept ' .. kind })
end

local function on_attach(buf)
  local keys = M.config.keymaps
  map_accept(buf, keys.accept, 'all')
  if use_builtin() then
    vim.lsp.inline_completion.enable(state.enabled, { bufnr = buf })
    local select = vim.lsp.inline_completion.select -- cycling, where this Neovim has it
    for name, delta in pairs({ next = 1, prev = -1 }) do
      if select and keys[name] and keys[name] ~= '' then
        vim.keymap.set('i', keys[name], function()
          select({ bufnr = buf, count = delta })
        end, { buffer = buf, desc = 'completer: ' .. name .. ' suggestion' })
      end
    end
    return
  end
  map_accept(buf, keys.accept_word, 'word')
  map_accept(buf, keys.accept_line, 'line')
  for name, delta in pairs({ next = 1, prev = -1 }) do
    if keys[name] and keys[name] ~= '' then
      vim.keymap.set('i', keys[name], function()
        M.cycle(delta)
      end, { buffer = buf, desc = 'completer: ' .. name .. ' suggestion' })
    end
  end
  if keys.dismiss and keys.dismiss ~= '' then
    vim.keymap.set('i', keys.dismiss, function()
      M.clear(buf)
    end, { buffer = buf, desc = 'completer: dismiss' })
  end
  local group = vim.api.nvim_create_augroup('completer_buf_' .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group,
    buffer = buf,
    callback = function()
      schedule(buf)
    end,
  })
  -- The cursor moved away from the ghost text without an edit (arrow keys, a click): the suggestion
  -- is for another place, so it goes (and Tab is Tab again). Moves that come with an edit are the
  -- TextChangedI handler's: Neovim sends CursorMovedI first, and typing through keeps the rest.
  vim.api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    buffer = buf,
    callback = function()
      local shown = state.buffers[buf] and state.buffers[buf].shown
      if not shown or vim.api.nvim_buf_get_changedtick(buf) ~= shown.tick then
        return
      end
      local row, col = unpack(vim.api.nvim_win_get_cursor(0))
      if row - 1 ~= shown.row or col ~= shown.col then
        cancel(buf)
        M.clear(buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd('InsertLeave', {
    group = group,
    buffer = buf,
    callback = function()
      buffer_state(buf).timer:stop()
      cancel(buf)
      M.clear(buf)
    end,
  })
  vim.api.nvim_create_autocmd('BufUnload', {
    group = group,
    buffer = buf,
    callback = function()
      local s = state.buffers[buf]
      if s then
        s.timer:stop()
        s.timer:close()
        state.buffers[buf] = nil
      end
    end,
  })
end

--- The server exited: unless asked to (M.restart, Neovim quitting, a clean exit), start it again, at
--- most `restarts` times in RESTART_WINDOW_S. One that exits before it ever started (a wrong `cmd` or
--- flag, a missing model) would only exit again: it is left down, as VS Code's client does.
local function on_server_exit(code, signal, client_id)
  for buf in pairs(state.buffers) do
    M.clear(buf) -- its requests died with it
  end
  local started = state.started[client_id]
  state.started[client_id] = nil
  if state.stopping or vim.v.exiting ~= vim.NIL or (code == 0 and signal == 0) then
    state.stopping = false
    return
  end
  local why = signal ~= 0 and ('signal ' .. signal) or ('exit code ' .. code)
  if not started then
    state.status = { state = 'error', message = 'the server exited as it started (' .. why ..
      '): check `cmd`, and the LSP log that :checkhealth vim.lsp names' }
    vim.notify('completer: ' .. state.status.message, vim.log.levels.ERROR)
    return
  end
  local now = vim.uv.now() / 1000
  state.exits = vim.tbl_filter(function(t)
    return now - t < RESTART_WINDOW_S
  end, state.exits)
  table.insert(state.exits, now)
  if #state.exits > M.config.restarts then
    state.status = { state = 'error', message = string.format(
      'the server exited (%s), %d times in %d minutes: not started again (:Completer restart)',
      why, #state.exits, RESTART_WINDOW_S / 60) }
    vim.notify('completer: ' .. state.status.message, vim.log.levels.ERROR)
    return
  end
  state.status = { state = 'loading', message = 'the server exited (' .. why .. '); started again' }
  vim.notify('completer: ' .. state.status.message, vim.log.levels.WARN)
  vim.lsp.enable('completer', false)
  vim.lsp.enable('completer', true)
end

--- Configure and start: registers the `completer` LSP config and enables it.
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  local cfg = {
    init_options = M.config.init_options,
    -- This plugin shows inline completions itself (or through vim.lsp.inline_completion, `builtin`):
    -- say so, or the server would also offer its suggestion as a completion-menu item.
    capabilities = { textDocument = { inlineCompletion = { dynamicRegistration = false } } },
    on_exit = function(code, signal, client_id)
      vim.schedule(function()
        on_server_exit(code, signal, client_id)
      end)
    end,
    handlers = {
      ['completer/status'] = function(_, params)
        state.status = params or {}
      end,
    },
  }
  if M.config.cmd then
    cfg.cmd = M.config.cmd
  end
  if M.config.filetypes then
    cfg.filetypes = M.config.filetypes
  end
  vim.lsp.config('completer', cfg)
  vim.api.nvim_create_autocmd('LspAttach', {
    group = vim.api.nvim_create_augroup('completer_attach', { clear = true }),
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == 'completer' then
        state.started[client.id] = true
        on_attach(args.buf)
      end
    end,
  })
  vim.lsp.enable('completer')
end

function M.status()
  return { enabled = state.enabled, server = state.status, builtin = use_builtin() }
end

function M.print_status()
  local s = state.status
  local lines = {
    string.format('completer: %s, %s', state.enabled and 'enabled' or 'disabled',
      use_builtin() and 'built-in inline completion' or 'plugin inline completion'),
    string.format('server: %s, backend %s on %s, model %s, last latency %s ms', s.state or 'not started',
      s.backend or '?', s.device or '?', s.model or '?', s.lastLatencyMs or '-'),
  }
  if s.message and s.message ~= '' then
    table.insert(lines, s.message)
  end
  vim.notify(table.concat(lines, '\n'))
end

function M.toggle()
  state.enabled = not state.enabled
  for buf in pairs(state.buffers) do
    cancel(buf)
    M.clear(buf)
  end
  if use_builtin() then
    vim.lsp.inline_completion.enable(state.enabled)
  end
  vim.notify('completer: ' .. (state.enabled and 'enabled' or 'disabled'))
end

function M.restart()
  state.exits = {}
  for _, client in ipairs(vim.lsp.get_clients({ name = 'completer' })) do
    state.stopping = true
    client:stop()
  end
  vim.defer_fn(function()
    vim.lsp.enable('completer', false)
    vim.lsp.enable('completer', true)
  end, 500)
end

return M
