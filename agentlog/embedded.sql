-- Named SQL of the embedded server (loaded by `embedded.py`), run through psycopg. Queries take `%s` placeholders,
-- in order; the two utility statements take none (PostgreSQL plans no parameters for them), so psycopg composes
-- them (`psycopg.sql`): each pair of braces there is filled with an identifier or a literal it quotes. The comments
-- below name the parameters in words and never write a percent sign or a brace, which psycopg would read as a
-- placeholder.

-- role_can_login --
-- Whether a role may log in (no row when the role does not exist).
-- Parameter: the role.
SELECT rolcanlogin FROM pg_roles WHERE rolname = %s;

-- let_role_login --
-- Let a role log in with a password. Composed: the role as an identifier, then the password as a literal.
ALTER ROLE {} LOGIN PASSWORD {};

-- database_exists --
-- Whether a database exists (a row when it does).
-- Parameter: the database.
SELECT 1 FROM pg_database WHERE datname = %s;

-- create_database --
-- Create the database. Composed: the database as an identifier.
CREATE DATABASE {};
