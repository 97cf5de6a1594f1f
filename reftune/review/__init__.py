"""`reftune review`: a local web app to browse, check, correct and export chains of thought.

What the app knows is plain Python, tested without a server: `sources` finds the input files and
their task, `records` reads them into one record model, `journal` replays the reviewer's actions,
`query` filters / searches / sorts / pages, `stats` and `charts` draw the figures, `export` writes
the training file. `app` holds the routes; `command` starts the server. Training code never imports
this package.
"""
