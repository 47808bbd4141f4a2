CREATE TABLE leanrank_rerank_calls (
	id SERIAL NOT NULL, 
	time TIMESTAMP WITH TIME ZONE NOT NULL, 
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

CREATE TABLE leanrank_rerank_calls_holds (
	id SERIAL NOT NULL, 
	time TIMESTAMP WITH TIME ZONE NOT NULL, 
	request_id VARCHAR(200) NOT NULL, 
	stage VARCHAR(100) NOT NULL, 
	course VARCHAR(200), 
	tenant VARCHAR(200), 
	amount_usd FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT leanrank_rerank_calls_holds_request_stage UNIQUE (request_id, stage)
);

CREATE TABLE leanrank_rerank_calls_replies (
	key VARCHAR(300) NOT NULL, 
	time TIMESTAMP WITH TIME ZONE NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	status INTEGER NOT NULL, 
	headers VARCHAR(4000) NOT NULL, 
	body BYTEA NOT NULL, 
	PRIMARY KEY (key)
);

CREATE INDEX leanrank_rerank_calls_course_time ON leanrank_rerank_calls (course, time);

CREATE INDEX leanrank_rerank_calls_replies_time ON leanrank_rerank_calls_replies (time);

CREATE INDEX leanrank_rerank_calls_tenant_time ON leanrank_rerank_calls (tenant, time);

CREATE INDEX leanrank_rerank_calls_time ON leanrank_rerank_calls (time);
