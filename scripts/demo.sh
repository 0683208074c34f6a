#!/usr/bin/env bash
# The main job: until the sampler lands, read an upstream profile and print its
# call tree.
set -euo pipefail
cd "$(dirname "$0")/.."
py=".venv/$(cut -d' ' -f4 scripts/pythons)/bin/python"
"$py" -c "import vmprof, sys; print(vmprof.read_profile(sys.argv[1]).get_tree())" \
    ../shared/fixtures/upstream/profiles/calc_py311.prof
