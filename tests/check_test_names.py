#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Fails when a Catch2 test case's name holds a ';'.

catch_discover_tests registers each test case with ctest by name, and CMake splits a name at ';'
(its list separator): the two halves become two ctest tests whose filters match no test case, so
both "pass" without running anything. Usage: check_test_names.py TESTS_DIR
"""
import pathlib
import re
import sys

CASE = re.compile(r'\b(TEST_CASE|TEMPLATE_TEST_CASE|TEMPLATE_LIST_TEST_CASE|SCENARIO)\s*\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)')
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    bad = []
    for path in sorted(root.rglob("*.cpp")):
        text = path.read_text(encoding="utf-8")
        for m in CASE.finditer(text):
            name = "".join(LITERAL.findall(m.group(2)))  # adjacent literals concatenated
            if ";" in name:
                bad.append(f"{path}:{text.count(chr(10), 0, m.start()) + 1}: test case name holds ';': {name}")
    for line in bad:
        print(line)
    print(f"check_test_names: {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
