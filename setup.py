# SPDX-License-Identifier: BSD-3-Clause
"""Builds hydragnn_cpp._core with the project's CMake (target hydragnn_cpp_core) for the running
interpreter; the package's Python files come from python/hydragnn_cpp."""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.join(os.path.abspath(self.build_temp), "cmake")
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DHYDRAGNN_ENABLE_TESTS=OFF",
                        "-DHYDRAGNN_ENABLE_EXAMPLES=OFF", "-DHYDRAGNN_PYTHON=ON",
                        "-DPython3_EXECUTABLE=" + sys.executable], check=True)
        subprocess.run(["cmake", "--build", build, "--target", "hydragnn_cpp_core", "-j", str(os.cpu_count() or 1)],
                       check=True)
        built = glob.glob(os.path.join(build, "python", "hydragnn_cpp", "_core*"))
        if not built:
            raise RuntimeError("hydragnn_cpp: CMake built no _core module in " + build)
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)


setup(packages=["hydragnn_cpp"], package_dir={"": "python"},
      ext_modules=[Extension("hydragnn_cpp._core", sources=[])], cmdclass={"build_ext": CMakeBuild})
