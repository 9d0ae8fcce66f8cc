from setuptools import find_packages, setup

setup(
    name="sta_d2",
    version="0.1.0",
    description="Stochastic and interleaved task allocation for multi-task learning in detectron2",
    packages=find_packages(include=["sta_d2", "sta_d2.*"]),
    python_requires=">=3.8",
    # detectron2 itself is not listed: it is not on PyPI; install it first (see README).
    install_requires=["torch>=1.8", "numpy", "pycocotools>=2.0.2", "shapely", "cityscapesscripts"],
    extras_require={"test": ["pytest", "hypothesis"], "nyuv2": ["h5py", "scipy"]},  # .mat conversion
)
