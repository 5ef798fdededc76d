from hubtui.cli import main

main()
