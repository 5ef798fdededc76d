from hubtui.cli import entry

entry()
