from sentei.cli import main

raise SystemExit(main())
