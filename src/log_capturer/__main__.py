from log_capturer.cli import main

main()
