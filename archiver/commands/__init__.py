"""The commands of `archiver`, in modules by what they work on; archiver/cli.py gathers them
under one group and is the boundary their errors and exit codes go through."""
