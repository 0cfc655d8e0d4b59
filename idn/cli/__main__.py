from idn.cli import main

main()
