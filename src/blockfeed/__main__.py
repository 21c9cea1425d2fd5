from blockfeed.cli import main

main()
