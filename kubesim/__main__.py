from kubesim.cli import main

main()
