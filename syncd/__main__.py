from syncd.entrypoints.cli import main

main()
