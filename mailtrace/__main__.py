from mailtrace.cli import main

main()
