"""The PostgreSQL storage: the contract on one PostgreSQL database, shared by any number of servers."""
