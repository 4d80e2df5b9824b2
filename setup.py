"""The build's one compiled step; everything else about the package is in pyproject.toml.

``node/event_codec.py`` (the read path's encoder of stored records into replies) is compiled
with Cython from its own Python source ("pure Python mode"), so there is one implementation.
The generated C goes under build/; the built module lands beside the source in an editable
install (``pip install -e .``), or in the wheel.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("sierradb.node.event_codec", ["node/event_codec.py"])],
        language_level=3,
        build_dir="build/cython",
    )
)
