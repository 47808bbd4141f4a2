BEGIN TRANSACTION;
CREATE TABLE leanrank_rerank_calls (
	id INTEGER NOT NULL, 
	time DATETIME NOT NULL, 
	request_id VARCHAR(200) NOT NULL, 
	course VARCHAR(200), 
	tenant VARCHAR(200), 
	stage VARCHAR(100) NOT NULL, 
	backend VARCHAR(500) NOT NULL, 
	model VARCHAR(500) NOT NULL, 
	documents INTEGER NOT NULL, 
	query_tokens INTEGER NOT NULL, 
	document_tokens INTEGER NOT NULL, 
	billed_units FLOAT NOT NULL, 
	billed_unit VARCHAR(16) NOT NULL, 
	cost_usd FLOAT, 
	latency_ms FLOAT NOT NULL, 
	cache_hit BOOLEAN NOT NULL, 
	cache_hits INTEGER NOT NULL, 
	count_source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT leanrank_rerank_calls_request_stage UNIQUE (request_id, stage)
);
INSERT INTO "leanrank_rerank_calls" VALUES(1,'2026-11-03 10:01:00.000000','old-1','python-101','school-a','rerank','cohere:rerank-v3.5','rerank-v3.5',120,12,19200,2.0,'search_units',0.004,85.0,0,0,'reported');
INSERT INTO "leanrank_rerank_calls" VALUES(2,'2026-11-03 10:02:00.000000','old-2','c2',NULL,'rerank','cohere:rerank-v3.5','rerank-v3.5',120,12,19200,2.0,'search_units',NULL,85.0,1,120,'reported');
CREATE TABLE leanrank_rerank_calls_holds (
	id INTEGER NOT NULL, 
	time DATETIME NOT NULL, 
	request_id VARCHAR(200) NOT NULL, 
	stage VARCHAR(100) NOT NULL, 
	course VARCHAR(200), 
	tenant VARCHAR(200), 
	amount_usd FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT leanrank_rerank_calls_holds_request_stage UNIQUE (request_id, stage)
);
INSERT INTO "leanrank_rerank_calls_holds" VALUES(1,'2026-11-03 11:00:00.000000','old-3','rerank','python-101','school-a',0.002);
CREATE TABLE leanrank_rerank_calls_replies (
	"key" VARCHAR(300) NOT NULL, 
	time DATETIME NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	status INTEGER NOT NULL, 
	headers VARCHAR(4000) NOT NULL, 
	body BLOB NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "leanrank_rerank_calls_replies" VALUES('school-a/old-1','2026-11-29 16:07:27.476742','ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',200,'{}',X'7B22726573756C7473223A205B5D7D');
CREATE INDEX leanrank_rerank_calls_course_time ON leanrank_rerank_calls (course, time);
CREATE INDEX leanrank_rerank_calls_replies_time ON leanrank_rerank_calls_replies (time);
CREATE INDEX leanrank_rerank_calls_tenant_time ON leanrank_rerank_calls (tenant, time);
CREATE INDEX leanrank_rerank_calls_time ON leanrank_rerank_calls (time);
COMMIT;
