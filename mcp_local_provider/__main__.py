from mcp_local_provider.cli.main import main

raise SystemExit(main())
