from envlock.cli.main import run

run()
