"""kubepie: per-user web/WebDAV servers that run with the user's own uid and gids."""
