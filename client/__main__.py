"""`python -m client`: the same command line as `tributary` (see client/cli.py)."""

from client.cli import main

if __name__ == "__main__":
    main()
