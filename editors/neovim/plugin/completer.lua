-- :Completer status | toggle | restart
if vim.g.loaded_completer then
  return
end
vim.g.loaded_completer = true

vim.api.nvim_create_user_command('Completer', function(opts)
  local completer = require('completer')
  local sub = opts.fargs[1] or 'status'
  if sub == 'status' then
    completer.print_status()
  elseif sub == 'toggle' then
    completer.toggle()
  elseif sub == 'restart' then
    completer.restart()
  else
    vim.notify('Completer: unknown subcommand ' .. sub .. ' (status, toggle, restart)', vim.log.levels.ERROR)
  end
end, {
  nargs = '?',
  complete = function()
    return { 'status', 'toggle', 'restart' }
  end,
  desc = 'completer: status, toggle, restart',
})
