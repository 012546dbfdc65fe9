"""The AWS-style load balancer agent that runs in the lab's elb host."""
