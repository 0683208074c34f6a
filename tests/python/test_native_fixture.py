"""Native frames through the reader: the original's calc_native_py311.prof and
our own native profiles read back with their native names, checked against
the sampler tests' independent decoder."""
import os

import vmprof
from data_paths import PROFILES
from sampler_util import burn_cpu, decode

FIXTURE = os.path.join(PROFILES, "calc_native_py311.prof")


def named_stacks(entries_list, names):
    """Each stack as names, root first."""
    return [[names.get(e, "?") for e in reversed(entries)] for entries in entries_list]


def test_original_native_profile_keeps_its_native_names():
    with open(FIXTURE, "rb") as f:
        raw = decode(f.read())
    assert raw.mode & 0x04
    # The original also wrote NATIVE_SYMBOLS records for some code objects'
    # ids, before their py: name: the py: name wins (oracle README).
    raw_names = {a: [x for x in n if x.startswith("py:")][-1:] or n[-1:] for a, n in raw.names.items()}
    raw_names = {a: n[0] for a, n in raw_names.items()}
    natives = {e for entries, _t, _r in raw.stacks for e in entries if e & 1}
    assert len(natives) == 34
    native_names = {a: raw_names[a] for a in natives}
    assert all(n.startswith("n:") for n in native_names.values())

    stats = vmprof.read_profile(FIXTURE)
    assert stats.profile_native
    ours = stats.adr_dict
    for a, n in native_names.items():
        assert ours[a] == n
    ours_stacks = [[ours.get(e, "?") for e in trace] for trace, _c, _t, _r in stats.profiles]
    assert ours_stacks == named_stacks([e for e, _t, _r in raw.stacks], raw_names)
    # Native frames do stand in the stacks, not just in the name table.
    assert sum(any(n.startswith("n:") for n in s) for s in ours_stacks) > 0


def test_our_native_profile_reads_back_with_every_frame_named(tmp_path):
    path = str(tmp_path / "native.prof")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    vmprof.enable(fd, period=0.002, native=True)
    burn_cpu(0.2)
    vmprof.disable()
    os.close(fd)
    with open(path, "rb") as f:
        raw = decode(f.read())
    stats = vmprof.read_profile(path)
    names = stats.adr_dict
    stacks = [trace for trace, _c, _t, _r in stats.profiles]
    assert stacks and all(e in names for s in stacks for e in s)
    assert any(names[e].startswith("n:") for s in stacks for e in s)
    raw_names = {a: n[-1] for a, n in raw.names.items()}
    assert [[names[e] for e in s] for s in stacks] == \
        named_stacks([e for e, _t, _r in raw.stacks], raw_names)
    # The tree keeps native frames as nodes of their own, named.
    seen = []
    stats.get_tree().walk(seen.append)
    assert any(n.name.startswith("n:") for n in seen if n.addr)
