from activitylog.cli.main import main

main()
