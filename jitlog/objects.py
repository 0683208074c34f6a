"""The trace forest of a JIT log, with the original `jitlog` package's API.

Every object is a view over the C decoder's forest (vmprof._core.JitLog):
traces are made when the forest is, their stages, ops and merge points only
when a script asks for them, so a large log costs what is looked at.
"""
from collections import defaultdict

STAGES = ("noopt", "opt", "asm")

# Merge-point semantic types (the keys of MergePoint.values), as the format
# numbers them (docs/spec/jitlog-format.md).
MP_FILENAME = (0x1, "s")
MP_LINENO = (0x2, "i")
MP_INDEX = (0x4, "i")
MP_SCOPE = (0x8, "s")
MP_OPCODE = (0x10, "s")


class ParseException(Exception):
    """The log cannot be read (a bad header), or where reading stopped."""


class FlatOp(object):
    """One resop of a stage: opname(args, @descr) = result.

    Made for every op a script walks, so it keeps the decoder's tuple and
    splits the op's text only when a part of it is asked for."""

    __slots__ = ("_forest", "_raw", "_parts", "index")

    def __init__(self, forest, index, raw):
        # raw: (opnum, text, failargs, descr number, code, bridge, count)
        self._forest = forest
        self._raw = raw
        self._parts = None
        self.index = index

    def _split(self):
        if self._parts is None:
            self._parts = self._raw[1].split(",")
        return self._parts

    @property
    def opnum(self):
        return self._raw[0]

    @property
    def opname(self):
        opnum = self._raw[0]
        return self._forest.resops.get(opnum, "<opnum %d>" % opnum)

    @property
    def result(self):
        return self._split()[0]

    @property
    def args(self):
        parts = self._split()
        return parts[1:-1] if self._raw[3] is not None else parts[1:]

    @property
    def descr(self):
        return self._split()[-1] if self._raw[3] is not None else None

    @property
    def descr_number(self):
        return self._raw[3]

    @property
    def failargs(self):
        failargs = self._raw[2]
        return failargs.split(",") if failargs is not None else None

    @property
    def core_dump(self):
        """(offset from the trace's machine-code start, bytes) or None."""
        return self._raw[4]

    @property
    def count(self):
        """The 'b'/'l' counters of this op's descr."""
        return self._raw[6]

    def get_name(self):
        return self.opname

    def getindex(self):
        return self.index

    def is_debug(self):
        return False

    def is_guard(self):
        return "guard" in self.opname

    def has_descr(self, descr=None):
        if not descr:
            return self.descr is not None
        return descr == self.descr_number

    def get_descr_nmr(self):
        return self.descr_number

    def is_stitched(self):
        return self._raw[5] is not None

    def get_bridge(self):
        """The bridge attached to this guard, or None."""
        bridge = self._raw[5]
        return None if bridge is None else self._forest._trace_list[bridge]

    def _text(self, show_unused_result):
        result = ""
        if self.result and (show_unused_result or self.result != "?"):
            result = "%s = " % self.result
        descr = ", @" + self.descr if self.descr is not None else ""
        return "%s%s(%s%s)" % (result, self.opname, ", ".join(self.args), descr)

    def pretty_print(self):
        return self._text(False)

    def __repr__(self):
        return self._text(True)


class MergePoint(object):
    """A debug merge point: where in the Python source the trace is."""

    def __init__(self, values, index):
        self.values = values    # semantic type (MP_*[0]) -> value
        self.index = index      # the number of ops before it in its stage

    def get_name(self):
        return ""

    def is_debug(self):
        return True

    def has_descr(self, descr=None):
        return False

    def get_scope(self):
        return self.values.get(MP_SCOPE[0], "")

    def get_source_line(self):
        """(line, file name), or (0, None) when the log does not say."""
        filename = self.values.get(MP_FILENAME[0])
        lineno = self.values.get(MP_LINENO[0])
        if filename is None or lineno is None:
            return 0, None
        return lineno, filename

    def pretty_print(self):
        lineno, filename = self.get_source_line()
        where = "%s:%s" % (filename, lineno) if filename else "?"
        opcode = self.values.get(MP_OPCODE[0], "")
        return "# %s %s %s" % (self.get_scope(), where, opcode)

    def __repr__(self):
        return "MergePoint(%r)" % (self.values,)


class Stage(object):
    """A trace's ops at one step of compilation: noopt, opt or asm."""

    def __init__(self, trace, mark, op_count):
        self.trace = trace
        self.mark = mark
        self._op_count = op_count
        self._ops = None
        self._merge_points = None

    @property
    def ops(self):
        if self._ops is None:
            forest = self.trace.forest
            raw = forest._log.ops(self.trace._index, self.mark)
            self._ops = [FlatOp(forest, i, r) for i, r in enumerate(raw)]
        return self._ops

    @property
    def merge_points(self):
        if self._merge_points is None:
            raw = self.trace.forest._log.merge_points(self.trace._index, self.mark)
            self._merge_points = [MergePoint(values, index) for index, values in raw]
        return self._merge_points

    def get_ops(self):
        return self.ops

    def get_merge_points(self):
        return self.merge_points

    def get_opcount(self):
        """The number of ops, merge points not counted."""
        return self._op_count

    def get_op(self, i):
        if i < 0 or i >= self._op_count:
            return None
        return self.ops[i]

    def get_last_op(self):
        return self.get_op(self._op_count - 1)

    def is_asm(self):
        return self.mark == "asm"

    def __repr__(self):
        return 'Stage("%s", %d ops)' % (self.mark, self._op_count)


class Trace(object):
    """A loop or a bridge, with its stages and its links."""

    def __init__(self, forest, index, info):
        self.forest = forest
        self._index = index
        self._info = info
        self.unique_id = info["id"]
        self.type = info["type"]
        self.jd_name = info["jd_name"]
        self.addrs = tuple(info["addrs"])
        self.counter = info["entry_count"]
        self.inputargs = info["inputargs"].split(",") if info["inputargs"] else []
        # the guard descr this bridge hangs off (0 for a loop)
        self.descr_number = info["stitched_descr"] or (
            info["start_number"] if self.type == "bridge" else 0)
        self._stages = None

    @property
    def stages(self):
        if self._stages is None:
            info = self._info
            self._stages = dict(
                (mark, Stage(self, mark, count))
                for mark, present, count in zip(STAGES, info["stages"], info["op_counts"])
                if present)
        return self._stages

    def get_id(self):
        return self.unique_id

    def get_stage(self, mark):
        return self.stages.get(mark)

    def get_first_merge_point(self):
        """The first merge point of the opt stage, or None."""
        stage = self.get_stage("opt")
        if stage and stage.get_merge_points():
            return stage.get_merge_points()[0]
        return None

    def is_bridge(self):
        return self.type == "bridge"

    def get_parent(self):
        """The trace holding the guard this bridge is attached to, or None."""
        parent = self._info["parent"]
        return None if parent is None else self.forest._trace_list[parent]

    def get_failing_guard(self):
        """The guard op (asm stage of the parent) this bridge is attached to."""
        parent = self.get_parent()
        if parent is None:
            return None
        stage = parent.get_stage("asm") or parent.get_stage("opt")
        return stage.get_op(self._info["parent_op"]) if stage else None

    @property
    def bridges(self):
        return self.forest._children.get(self._index, [])

    def get_stitched_descr_number(self):
        return self.descr_number

    def get_counter_points(self):
        return {0: self.counter}

    def is_assembled(self):
        return self.addrs[0] != -1

    def get_addrs(self):
        return self.addrs

    def contains_addr(self, addr):
        return self.addrs[0] <= addr <= self.addrs[1]

    def get_core_dump(self):
        """The machine code of the asm stage's ops, or None."""
        stage = self.get_stage("asm")
        if stage is None:
            return None
        return b"".join(op.core_dump[1] for op in stage.ops if op.core_dump)

    def __repr__(self):
        return "Trace(0x%x, %s, %d stages)" % (self.unique_id, self.type, len(self.stages))


class TraceForest(object):
    """Every trace of a log, by id; see parser.parse_jitlog."""

    def __init__(self, log, filepath=None):
        self._log = log
        self.filepath = filepath
        self.version = log.version
        self.word_size = log.word_size
        self.is_32bit = log.word_size == 4
        self.machine = log.machine
        warning = log.warning
        # Where a cut or damaged log stopped being read (the original kept
        # its exception here); None when all of it was read.
        self.exc = ParseException(warning[0]) if warning else None
        self.resops = log.resops()
        self._trace_list = [Trace(self, i, log.trace(i)) for i in range(log.trace_count)]
        self.traces = dict((t.unique_id, t) for t in self._trace_list)
        self.addrs = dict((t.addrs[0], t) for t in self._trace_list if t.is_assembled())
        # guard descr number -> the unique id of the bridge stitched to it
        self.stitches = dict((descr, self._trace_list[bridge].unique_id)
                             for descr, _, bridge in log.stitches() if bridge is not None)
        self._children = {}
        for t in self._trace_list:
            parent = t._info["parent"]
            if parent is not None:
                self._children.setdefault(parent, []).append(t)
        # file name -> {line: (indent, text)} from SOURCE_CODE records
        self.source_lines = defaultdict(dict)
        for filename, line, indent, text in log.source_lines():
            self.source_lines[filename][line] = (indent, text)

    def exception_raised(self):
        return self.exc

    def get_trace(self, unique_id):
        return self.traces.get(unique_id)

    get_trace_by_id = get_trace

    def get_trace_by_addr(self, addr):
        return self.addrs.get(addr)

    def get_stitch_target(self, descr_number):
        return self.stitches.get(descr_number)

    def get_source_line(self, filename, lineno):
        return self.source_lines.get(filename, {}).get(lineno, (None, None))

    def __repr__(self):
        return "TraceForest(%d traces, version %d, %s)" % (len(self.traces), self.version,
                                                          self.machine)
