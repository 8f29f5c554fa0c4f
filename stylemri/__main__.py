from stylemri.cli import main

raise SystemExit(main())
