import vmprof, sys
def f(n):
    return sum(i * i for i in range(n))
def main():
    for _ in range(400):
        f(20000)
with open(sys.argv[1], "w+b") as fd:
    vmprof.enable(fd.fileno(), period=0.001, memory=(sys.argv[2] == "mem"), lines=(sys.argv[2] == "lines"))
    main()
    vmprof.disable()
