"""`python -m rulecast`: the command line."""
from rulecast.cli import main

raise SystemExit(main())
