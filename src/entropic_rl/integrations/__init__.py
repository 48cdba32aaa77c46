"""Plug-ins for the frameworks users already scale with: ``entropic_rl.integrations.trl`` (extra
``trl``) and ``entropic_rl.integrations.verl`` (extra ``verl``). Import the submodule you need; this
package imports neither framework."""
