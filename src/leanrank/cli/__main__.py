from leanrank.cli.app import main

main()
