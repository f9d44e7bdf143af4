"""rulecast-example-addon: a `weekday` condition and a `notify_digest` action.

Copy this folder to start an add-on: rename the package, keep the entry point group.
"""
from setuptools import setup

setup(
    name="rulecast-example-addon",
    version="0.1.0",
    description="An example rulecast add-on: a weekday condition and a notify_digest action",
    py_modules=["rulecast_example_addon"],
    python_requires=">=3.9",
    install_requires=["rulecast"],
    # rulecast loads every module registered under the entry-point group "rulecast".
    entry_points={"rulecast": ["example = rulecast_example_addon"]},
)
