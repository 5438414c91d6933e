from activitylog.cli.main import app

app()
