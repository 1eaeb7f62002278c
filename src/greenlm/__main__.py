from greenlm.cli.main import main

main()
