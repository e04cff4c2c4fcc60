#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""The README's library snippet (the ```cpp block under '## Library use') must be exactly
tests/downstream/main.cpp without its SPDX line, so that the snippet users copy is the program the
downstream test builds and runs against the installed package."""
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
main = open(os.path.join(root, "tests", "downstream", "main.cpp"), encoding="utf-8").read()
start = readme.index("## Library use")
a = readme.index("```cpp\n", start) + len("```cpp\n")
b = readme.index("```", a)
snippet = readme[a:b].rstrip("\n")
lines = main.split("\n")
if lines and lines[0].startswith("// SPDX"):
    lines = lines[1:]
program = "\n".join(lines).rstrip("\n")
if snippet != program:
    import difflib
    sys.stdout.writelines(difflib.unified_diff((snippet + "\n").splitlines(True), (program + "\n").splitlines(True),
                                               "README.md (Library use)", "tests/downstream/main.cpp"))
    print("check_readme_snippet: FAILED: the README snippet and tests/downstream/main.cpp differ")
    sys.exit(1)
print("check_readme_snippet: ok")
