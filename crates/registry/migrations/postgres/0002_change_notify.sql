-- Every audited change commits an audit_log row; notifying on it wakes every replica's router the
-- moment the change commits (NOTIFY is delivered at commit, never for rolled-back writes), so
-- replicas need not wait for their next poll. The payload names the schema because one database
-- can hold several registries and the channel is database-wide.
CREATE FUNCTION promptops_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('promptops_registry', TG_TABLE_SCHEMA || ':' || NEW.seq);
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_notify AFTER INSERT ON audit_log
FOR EACH ROW EXECUTE FUNCTION promptops_notify_change();
