"""``python -m trs_lib.reproduce``: the grid driver's command (``trs_lib.companion.reproduce``)."""

if __name__ == "__main__":
    from trs_lib.companion.reproduce import main

    raise SystemExit(main())
