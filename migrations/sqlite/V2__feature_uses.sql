-- Successful uses of rate-limited features, one row per use, so rolling windows survive a
-- restart. Rows older than the longest window of their feature are pruned as uses arrive.

CREATE TABLE feature_uses (
    user_pk  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    feature  TEXT    NOT NULL,
    used_at  INTEGER NOT NULL             -- unix ms, UTC
) STRICT;

CREATE INDEX feature_uses_by_user_feature_time ON feature_uses(user_pk, feature, used_at);
