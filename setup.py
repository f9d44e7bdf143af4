from setuptools import find_packages, setup

setup(
    name="rulecast",
    version="0.1.0",
    description="Live, rule-driven notifications for Python web applications",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["rulecast", "rulecast.*"]),
    package_data={"rulecast": ["static/*", "demo/*"]},
    python_requires=">=3.9",
    install_requires=[
        "gevent>=23.9",
        "gevent-websocket==0.10.1",
        "Flask>=2.3",
        "pluggy>=1.3",
        "marshmallow>=3.20",
        "nanomsg>=1.0",
        "itsdangerous>=2.1",
        "PyYAML>=6.0",
        "Jinja2>=3.1",
        "prometheus_client>=0.17",
        "websocket-client>=1.6",
        "requests>=2.28",
    ],
    extras_require={
        "redis": ["redis>=5.0"],
        "test": ["pytest>=7.4", "pytest-timeout>=2.1", "transaction>=5.0", "wheel",
                 "redis>=5.0", "playwright>=1.40", "flask-socketio>=5.3"],
        "docs": ["sphinx>=7.4", "myst-parser>=3.0", "furo>=2024.8.6"],
        "bench": ["flask-socketio>=5.3"],
    },
    entry_points={
        "console_scripts": ["rulecast = rulecast.cli:main"],
    },
)
