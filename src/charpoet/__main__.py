from charpoet.cli import main

main()
