"""`reftune review`: a local web app to browse, check, correct and export chains of thought.

What the app knows is plain Python, tested without a server: `sources` finds the input files and
their task, `records` reads them into one record model (a big or growing file a piece at a time:
`tail` gives the lines past those read), `journal` replays the reviewer's actions,
`query` filters / searches / sorts / pages, `stats` and `charts` draw the figures, `export` writes
the training file, `team` assigns records to reviewers and settles their decisions, `agreement`
measures how far they agree, `suggest` asks a model's endpoint for CoTs of a question, `doubt` orders
the records by a verifier's scores. `app` holds the routes, `access` tells the reviewers apart; `command`
starts the server. Training code never imports this package.
"""
