PRAGMA cache_size=-200000;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c INTEGER);
WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<400000)
INSERT INTO t SELECT i, hex(randomblob(0))||printf('%.*c', i%50, 'z')||i, (i*7919)%100003 FROM r;
CREATE INDEX tc ON t(c);
SELECT count(*), sum(c), sum(length(b)) FROM t WHERE c % 3 = 1;
SELECT group_concat(a) FROM (SELECT a FROM t ORDER BY c, a LIMIT 50);
