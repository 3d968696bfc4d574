"""`beaver sweep`: many beaver runs from one config, each evaluated, gathered into one table.

`plan` expands the config into jobs and steps, `runner` runs them as subprocesses of the real
CLI (resumable, N at once, stopped cleanly by signals), `results` reads back the table, and
`beaver.report.frontier` draws the helpful-safe frontier.
"""
