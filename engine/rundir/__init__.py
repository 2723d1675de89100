"""The run directory: the only contract between the engine and the app (docs/CONTRACT.md).

Every writer and reader of a runs directory goes through this package. Torch-free.

    layout      the files of a run, the two layouts (ours and the reference's), naming, lookups
    states      states, the trainer's exit codes, staleness, timestamps
    lock        one trainer per run directory
    status      status.json: the live writer, and closing it for a trainer that died
    files       history.json's keys; tolerant readers of JSON objects, series, the log's tail
    evaluation  eval.json: its writer and the tolerant reader (and the reference's files)
    summary     a run as a leaderboard row; every run of a runs directory
    run         everything the app shows of one run
"""
