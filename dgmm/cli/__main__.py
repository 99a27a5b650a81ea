from . import main

if __name__ == "__main__":  # worker processes of a local cluster import __main__ again (spawn)
    main()
