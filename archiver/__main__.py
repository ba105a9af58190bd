"""`python -m archiver` and the `archiver` command.

Kept free of imports on purpose: extraction workers are started with "spawn", which imports
the parent's main module in every worker, and each worker should carry only what
extraction needs, not the CLI, config and HTTP stacks (~25 MB each).
"""


def main() -> None:
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
