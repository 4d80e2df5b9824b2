"""The build's one compiled step; everything else about the package is in pyproject.toml.

Two record-path modules are compiled with Cython from their own Python sources ("pure Python
mode"), so each has one implementation: ``storage/record_check.py`` (every record written is
encoded there, and every stored record a read returns is checked there) and
``node/event_codec.py`` (checked records into reply bytes).
``storage/sdb_crc32c.pxd`` declares the CPU's CRC32C (a few lines of C) that the compiled
record check cimports; ``include_path`` lets Cython find it. The generated C goes under build/;
the built module lands beside the source in an editable install (``pip install -e .``), or in
the wheel.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("sierradb.node.event_codec", ["node/event_codec.py"]),
            Extension("sierradb.storage.record_check", ["storage/record_check.py"]),
            Extension("sierradb.storage.index_build", ["storage/index_build.py"]),
        ],
        language_level=3,
        build_dir="build/cython",
        include_path=["storage"],
    )
)
