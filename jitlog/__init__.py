"""Reading PyPy's JIT logs: the trace forest, the query language, the CLI.

    from jitlog.parser import parse_jitlog
    forest = parse_jitlog("prog.jitlog")
    for trace in jitlog.query.select(forest, 'loops & func("main")'):
        print(trace.get_stage("opt").get_opcount())

The log is decoded and queries are parsed by vmprof's C extension
(src/jitlog); these modules only present the result with the API scripts
written for the original `jitlog` package use.  `python -m jitlog` records
(PyPy), uploads and prints logs.
"""
